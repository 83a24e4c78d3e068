#!/usr/bin/env node
// Entry point of the `loom` command: runs the compiled CLI (build with `npm run build`).
import { main } from '../dist/src/cli/main.js';

process.exitCode = await main(process.argv);
