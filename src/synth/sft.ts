// SFT conversations in LLaVA's JSON layout, each about one clean scene.
import { encodeScene, type EncodeSpec, type SceneEncoder } from './encode.js';
import { questionsForScene, type QaPair } from './qa.js';
import { generateScene, type Scene } from './scene.js';
import { streamRng } from './streams.js';

export interface LlavaTurn {
  from: 'human' | 'gpt';
  value: string;
}

export interface LlavaRecord {
  id: string;
  image: string;
  conversations: LlavaTurn[];
}

export interface SftItem {
  record: LlavaRecord;
  scene: Scene;
  qa: QaPair[];
}

function sftId(index: number): string {
  return `synth_sft_${String(index).padStart(8, '0')}`;
}

export function planSftItem(seed: number, index: number): SftItem {
  const rng = streamRng(seed, 'sft', index);
  const scene = generateScene(rng);
  const qa = questionsForScene(scene, rng, rng.int(2, 5));
  const conversations: LlavaTurn[] = [];
  qa.forEach((pair, turn) => {
    conversations.push({ from: 'human', value: turn === 0 ? `<image>\n${pair.question}` : pair.question });
    conversations.push({ from: 'gpt', value: pair.answer });
  });
  const id = sftId(index);
  return { record: { id, image: `images/${id}.jpg`, conversations }, scene, qa };
}

/** SFT images are JPEG, as LLaVA's `images/<id>.jpg` paths promise. */
const SFT_IMAGE: EncodeSpec = { format: 'jpg', quality: 90 };

export function encodeSftImage(item: SftItem, encode: SceneEncoder = encodeScene): Promise<Buffer> {
  return encode(item.scene, SFT_IMAGE);
}
