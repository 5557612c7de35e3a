#!/usr/bin/env node
// The node agent (agents/src/cmd/agent.ts); options in agents/src/cmd/agent-config.ts.
import { tsImport } from 'tsx/esm/api';

const { main } = await tsImport('../agents/src/cmd/agent.ts', import.meta.url);
await main();
