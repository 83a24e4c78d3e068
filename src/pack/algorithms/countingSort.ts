// Orders sample indices by length in O(n + capacity): lengths are small integers, so counting
// beats a comparison sort and needs no per-item objects. Ties keep index order (stable).

/** Sample indices by decreasing length; equal lengths in increasing index order. */
export function indicesByDecreasingLength(lengths: Int32Array, capacity: number, from = 0, to = lengths.length): Int32Array {
  const starts = new Int32Array(capacity + 2);
  for (let i = from; i < to; i++) starts[capacity - lengths[i]! + 1]!++;
  for (let k = 1; k <= capacity + 1; k++) starts[k]! += starts[k - 1]!;
  const order = new Int32Array(to - from);
  for (let i = from; i < to; i++) order[starts[capacity - lengths[i]!]!++] = i;
  return order;
}

/**
 * Sample indices grouped by length: the samples of length l are
 * order[start[l] .. start[l + 1]), in increasing index order.
 */
export function indicesByLength(lengths: Int32Array, capacity: number): { order: Int32Array; start: Int32Array } {
  const start = new Int32Array(capacity + 2);
  for (let i = 0; i < lengths.length; i++) start[lengths[i]! + 1]!++;
  for (let l = 1; l <= capacity + 1; l++) start[l]! += start[l - 1]!;
  const fill = start.slice();
  const order = new Int32Array(lengths.length);
  for (let i = 0; i < lengths.length; i++) order[fill[lengths[i]!]!++] = i;
  return { order, start };
}
