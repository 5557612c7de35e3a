#!/usr/bin/env node
// secai-audit: verify a node's audit log offline. The implementation is TypeScript, loaded by tsx.
import { tsImport } from 'tsx/esm/api';

const { default: main } = await tsImport('../agents/src/audit/secai-audit-cli.ts', import.meta.url);
process.exitCode = await main(process.argv.slice(2));
