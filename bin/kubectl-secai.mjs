#!/usr/bin/env node
// The kubectl plugin (operator/src/cmd/kubectl-secai.ts): kubectl runs `kubectl-secai` from PATH
// for `kubectl secai ...`.
import { tsImport } from 'tsx/esm/api';

const { main } = await tsImport('../operator/src/cmd/kubectl-secai.ts', import.meta.url);
await main();
