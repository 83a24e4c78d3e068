// Groups consecutive tar members into samples by key (WebDataset convention).
import { splitMemberName } from './keys.js';

export interface Member {
  name: string;
  /** Field name: the basename after its first dot, lower-cased ("jpg", "txt", "b.jpg"). */
  ext: string;
  data: Buffer;
}

export interface Group {
  key: string;
  members: Member[];
}

export type GroupEvent = { kind: 'group'; group: Group } | { kind: 'nameless'; name: string };

/**
 * A group ends when a member with another key arrives, or when a member repeats a field the
 * group already has (e.g. a.jpg a.txt a.json a.jpg): the repeat starts a new group under the
 * same key, which the validator then reports as a duplicate key.
 */
export class Grouper {
  private current: Group | null = null;
  /** Nameless members met while a group was open: reported after it, to keep tar order. */
  private deferred: GroupEvent[] = [];

  push(name: string, data: Buffer): GroupEvent[] {
    const split = splitMemberName(name);
    if (!split) {
      const event: GroupEvent = { kind: 'nameless', name };
      if (!this.current) return [event];
      this.deferred.push(event);
      return [];
    }
    const events: GroupEvent[] = [];
    const cur = this.current;
    if (cur && (cur.key !== split.key || cur.members.some((m) => m.ext === split.ext))) {
      events.push({ kind: 'group', group: cur }, ...this.deferred);
      this.deferred = [];
      this.current = null;
    }
    if (!this.current) this.current = { key: split.key, members: [] };
    this.current.members.push({ name, ext: split.ext, data });
    return events;
  }

  /** The last, still open group (the archive ended) and the events deferred behind it. */
  finish(): { last: Group | null; after: GroupEvent[] } {
    const last = this.current;
    const after = this.deferred;
    this.current = null;
    this.deferred = [];
    return { last, after };
  }
}
