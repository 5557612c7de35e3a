#!/usr/bin/env node
// secai-quarantine: check a model file or URL with the node's quarantine pipeline. The
// implementation is TypeScript (agents/src/quarantine/cli.ts), loaded through tsx.
import { tsImport } from 'tsx/esm/api';

const { main } = await tsImport('../agents/src/quarantine/cli.ts', import.meta.url);
process.exitCode = await main(process.argv.slice(2));
