// What both stores share: records by id (found by full id or unique prefix)
// and the name reservations that make a name/attempt unique.
import { invalidArgument, notFound } from "../../runtime/errors.js";

// a whole id (64 hex digits) as it was asked for; anything longer cut
const idShown = (id: string): string => JSON.stringify(id.length > 72 ? `${id.slice(0, 64)}…` : id);

export class NamedStore<T extends { id: string }> {
  readonly #byId = new Map<string, T>();
  readonly #names = new Map<string, string>();
  #all: readonly T[] | undefined;

  constructor(readonly what: string, readonly idField: string, readonly nameOf: (item: T) => string | undefined) {}

  /** Reserves a name for an id; returns the id holding it when taken. */
  reserve(name: string, id: string): string | undefined {
    const holder = this.#names.get(name);
    if (holder !== undefined) return holder;
    this.#names.set(name, id);
    return undefined;
  }

  release(name: string, id: string): void {
    if (this.#names.get(name) === id) this.#names.delete(name);
  }

  holder(name: string): string | undefined {
    return this.#names.get(name);
  }

  add(item: T): void {
    this.#all = undefined;
    this.#byId.set(item.id, item);
    const name = this.nameOf(item);
    if (name !== undefined) this.#names.set(name, item.id);
  }

  delete(id: string): void {
    const item = this.#byId.get(id);
    this.#all = undefined;
    this.#byId.delete(id);
    const name = item && this.nameOf(item);
    if (name !== undefined) this.release(name, id);
  }

  list(): T[] {
    return [...this.#byId.values()];
  }

  /** Every item, in one array kept until the next add or delete: the same array means the same items. Not to be changed. */
  all(): readonly T[] {
    this.#all ??= Object.freeze([...this.#byId.values()]);
    return this.#all;
  }

  /** By full id or unique prefix; undefined when none. */
  find(idOrPrefix: string): T | undefined {
    if (!idOrPrefix) throw invalidArgument(`${this.idField} is required`);
    const exact = this.#byId.get(idOrPrefix);
    if (exact) return exact;
    const matches = [...this.#byId.keys()].filter((id) => id.startsWith(idOrPrefix));
    if (matches.length > 1) throw invalidArgument(`${this.what} id prefix ${idShown(idOrPrefix)} is ambiguous (${matches.length} match)`);
    return matches[0] === undefined ? undefined : this.#byId.get(matches[0]);
  }

  get(idOrPrefix: string): T {
    const item = this.find(idOrPrefix);
    if (!item) throw notFound(`${this.what} ${idShown(idOrPrefix)} not found`);
    return item;
  }
}
