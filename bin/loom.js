#!/usr/bin/env node
// Entry point of the `loom` command: runs the compiled CLI (build with `npm run build`).
import { main } from '../dist/src/cli/main.js';

// `loom ... | head` closes our stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

process.exitCode = await main(process.argv);
