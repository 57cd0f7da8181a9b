// Bundles the page with esbuild into dist/: `node build.mjs` once, or
// `node build.mjs --serve` to rebuild on change and serve it at
// http://localhost:3000 (PORT to change), the origin `gatehouse dev` allows
// by default.
import { copyFile, mkdir } from "node:fs/promises";
import * as esbuild from "esbuild";

// oneCopy resolves the protobuf runtime from this package for every
// importer: @gatehouse/client's sources sit in gen/ts, whose own
// node_modules (its dev tools) hold another copy, and a bundle must have one.
const oneCopy = {
  name: "one-copy",
  setup(build) {
    build.onResolve({ filter: /^@bufbuild\/protobuf(\/|$)/ }, (args) =>
      args.pluginData?.oneCopy
        ? undefined
        : build.resolve(args.path, { kind: args.kind, resolveDir: process.cwd(), pluginData: { oneCopy: true } }),
    );
  },
};

const options = {
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  outdir: "dist",
  sourcemap: true,
  // @gatehouse/client from its TypeScript sources (gen/ts/package.json's
  // "source" export): gen/ts needs no build of its own.
  conditions: ["source"],
  plugins: [oneCopy],
  logLevel: "warning",
};

await mkdir("dist", { recursive: true });
await copyFile("public/index.html", "dist/index.html");
if (process.argv.includes("--serve")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  const port = Number(process.env.PORT ?? 3000);
  await ctx.serve({ servedir: "dist", host: "127.0.0.1", port });
  console.log(`Open http://localhost:${port}/ (with gatehouse dev running). Ctrl-C stops.`);
} else {
  await esbuild.build(options);
}
