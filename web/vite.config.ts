import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

// The built app ships inside the Python package (ccorch/web/dist) and the node serves it
// at "/"; nothing is fetched from a CDN at run time.
export default defineConfig({
  plugins: [svelte()],
  build: {
    outDir: "../ccorch/web/dist",
    emptyOutDir: true,
    assetsInlineLimit: 0, // the page's CSP allows scripts and styles from 'self' only
    reportCompressedSize: true,
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8000", ws: true },
      "/openapi.json": "http://127.0.0.1:8000",
    },
  },
});
