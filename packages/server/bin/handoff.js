#!/usr/bin/env node
// The `handoff` command; the TypeScript sources are compiled to dist/ by `npm ci` (prepare).
import('../dist/src/cli/main.js').then((m) => m.main(process.argv)).catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
