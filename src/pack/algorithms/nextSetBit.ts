// A set of integers in [0, size) that answers "smallest member >= x" in O(log32 size): a
// 32-ary segment tree whose nodes are bitmask words (a word's bit says "this child has a
// member"). Best-fit uses it over remaining capacities: 4096 capacities are three levels.

export class NextSetBit {
  private readonly levels: Uint32Array[] = [];

  constructor(readonly size: number) {
    let n = Math.max(1, size);
    do {
      const words = (n + 31) >>> 5;
      this.levels.push(new Uint32Array(words));
      n = words;
    } while (n > 1);
  }

  has(i: number): boolean {
    return (this.levels[0]![i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  add(i: number): void {
    for (const words of this.levels) {
      const w = i >>> 5;
      const old = words[w]!;
      words[w] = old | (1 << (i & 31));
      if (old !== 0) return; // the levels above already mark this word
      i = w;
    }
  }

  delete(i: number): void {
    for (const words of this.levels) {
      const w = i >>> 5;
      const now = words[w]! & ~(1 << (i & 31));
      words[w] = now;
      if (now !== 0) return;
      i = w;
    }
  }

  /** Smallest member >= i, or -1 when there is none. */
  next(i: number): number {
    if (i < 0) i = 0;
    if (i >= this.size) return -1;
    const levels = this.levels;
    let level = 0;
    // Climb until some word holds a member at or after the position.
    for (;;) {
      const words = levels[level]!;
      const w = i >>> 5;
      if (w >= words.length) return -1;
      const masked = words[w]! & (0xffffffff << (i & 31));
      if (masked !== 0) {
        i = (w << 5) + lowestBit(masked);
        break;
      }
      level++;
      if (level === levels.length) return -1;
      i = w + 1;
    }
    // Descend: the lowest marked child of each word.
    while (level > 0) {
      level--;
      i = (i << 5) + lowestBit(levels[level]![i]!);
    }
    return i;
  }
}

function lowestBit(word: number): number {
  return 31 - Math.clz32(word & -word);
}
