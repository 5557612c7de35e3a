// Clean-up that runs every step whatever an earlier one threw (a failed stop must not leave a
// namespace or a process behind), then throws what failed, all of it.
export async function runEvery(steps: readonly (() => unknown)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      errors.push(error);
    }
  }
  if (errors.length) throw new AggregateError(errors, 'clean-up failed');
}
