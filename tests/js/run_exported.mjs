// Run a zoo-exported ONNX model in onnxruntime-node or onnxruntime-web (WebAssembly, under Node.js).
// usage: node run_exported.mjs node|web MODEL.onnx INPUTS.json
// INPUTS.json: [{"name": "frog.jpg", "pixels": "frog.bin", "shape": [H, W, 3]}, ...] where each .bin holds
// raw uint8 RGB (or grey) pixels decoded by Python, so no image library is needed here.
// Prints one JSON line per input: every output as {dims, type, data}.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

const [backend, modelPath, inputsPath] = process.argv.slice(2);
const ort = backend === "web" ? await import("onnxruntime-web") : await import("onnxruntime-node");
if (backend === "web") {
  ort.env.wasm.numThreads = 1; // no worker threads: plain Node.js, deterministic
}
// session.x64quantprecision: exact int8 products on x86 CPUs without VNNI, as zoo's sessions have them
// (onnxruntime's u8s8 kernels saturate there; WebAssembly's do not).
const extra = { session: { x64quantprecision: "1" } };
const options = { executionProviders: [backend === "web" ? "wasm" : "cpu"], extra };
const session = await ort.InferenceSession.create(new Uint8Array(readFileSync(modelPath)), options);
const inputs = JSON.parse(readFileSync(inputsPath, "utf8"));
for (const item of inputs) {
  const bytes = readFileSync(resolve(dirname(inputsPath), item.pixels));
  const image = new ort.Tensor("uint8", new Uint8Array(bytes), item.shape);
  const results = await session.run({ image });
  const out = {};
  for (const name of session.outputNames) {
    const t = results[name];
    const data = t.type === "int64" ? Array.from(t.data, (v) => Number(v)) : Array.from(t.data);
    out[name] = { dims: t.dims, type: t.type, data };
  }
  console.log(JSON.stringify({ name: item.name, backend, outputs: out }));
}
