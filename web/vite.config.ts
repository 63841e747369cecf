// The web page (docs/web.md): built into dist/web, which `rewind server --http` serves.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    // One small bundle; no inline scripts, so the server's CSP can forbid them.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
