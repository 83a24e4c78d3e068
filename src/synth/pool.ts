// Ordered, bounded concurrency: start up to `limit` tasks ahead, yield results in input order.
export async function* orderedMap<T, R>(items: Iterable<T>, limit: number, task: (item: T) => Promise<R>): AsyncGenerator<R> {
  const inFlight: Array<Promise<R>> = [];
  for (const item of items) {
    const p = task(item);
    // Mark handled now; the rejection is re-thrown when this promise's turn comes.
    p.catch(() => {});
    inFlight.push(p);
    if (inFlight.length >= limit) yield await (inFlight.shift() as Promise<R>);
  }
  while (inFlight.length > 0) yield await (inFlight.shift() as Promise<R>);
}

export function range(start: number, end: number): Iterable<number> {
  return {
    *[Symbol.iterator]() {
      for (let i = start; i < end; i++) yield i;
    },
  };
}
