/** Entry point when running from sources (tests, benches): `node --import tsx cli/main-entry.ts`. */
import '../common/polyfill.js'
import { main } from './main.js'

await main(process.argv.slice(2))
