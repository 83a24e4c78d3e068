// Worker thread body: draws a scene and encodes it with sharp, off the main thread (the main thread
// plans samples and writes shards; sharp's per-call setup would otherwise serialise on it).
import { parentPort } from 'node:worker_threads';
import { encodeRgb, type EncodeSpec } from './encode.js';
import { renderScene } from './render.js';
import type { Scene } from './scene.js';

export interface EncodeRequest {
  id: number;
  scene: Scene;
  spec: EncodeSpec;
}

export type EncodeReply = { id: number; data: Uint8Array } | { id: number; error: string };

const port = parentPort;
if (port) {
  port.on('message', (req: EncodeRequest) => {
    encodeRgb(renderScene(req.scene), req.scene.width, req.scene.height, req.spec).then(
      (data) => port.postMessage({ id: req.id, data: new Uint8Array(data) } satisfies EncodeReply),
      (err: unknown) => port.postMessage({ id: req.id, error: err instanceof Error ? err.message : String(err) } satisfies EncodeReply),
    );
  });
}
