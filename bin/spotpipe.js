#!/usr/bin/env node
// The `spotpipe` command. The TypeScript sources are compiled to dist/ by `npm ci` (prepare script).
import '../dist/common/polyfill.js'
import { main } from '../dist/cli/main.js'

main(process.argv.slice(2))
