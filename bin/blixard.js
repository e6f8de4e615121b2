#!/usr/bin/env node
// Thin launcher: the CLI is compiled by `tsc` (npm's `prepare`) into dist/.
import { main } from '../dist/src/cli/main.js';

main(process.argv).then((code) => { process.exitCode = code; });
