// Loaded with `node --import` before the worker. The worker runs on Node's own type stripping
// rather than tsx, whose esbuild service is a separate binary the sandbox would have to let it
// execute; the project's imports name `.js` files, which this maps to the `.ts` sources.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (error) {
      if (!specifier.startsWith('.') || !specifier.endsWith('.js')) throw error;
      return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
    }
  },
});
