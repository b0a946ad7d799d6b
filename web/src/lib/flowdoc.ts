// A flow's YAML as the editor holds it: the text parsed into a yaml Document (so comments
// and the way values are written survive an edit elsewhere), the graph derived from it by
// the node types' schema (GET /api/flows/schema), and the edits the editor makes.

import { Document, isMap, isNode, isSeq, parseDocument, YAMLMap } from "yaml";

export type FieldKind =
  | "node"
  | "text"
  | "file"
  | "seconds"
  | "integer"
  | "keys"
  | "templates"
  | "fields"
  | "cases"
  | "variable"
  | "choice"
  | "url"
  | "queue"
  | "destination"
  | "hours"
  | "timezone"
  | "dates"
  | "priority";

export interface FieldSpec {
  key: string;
  kind: FieldKind;
  required: boolean;
  help?: string;
  min?: number;
  max?: number;
  default?: unknown;
  choices: string[];
}

export interface NodeType {
  name: string;
  help: string;
  icon: string;
  one_of: string[];
  exits: string[];
  fields: FieldSpec[];
}

export interface Schema {
  types: NodeType[];
  languages: string[];
}

/** One arrow: from a node's exit (a field, a key of a keys field, a case) to a node. */
export interface Exit {
  node: string;
  handle: string; // "next", "options:1", "cases:0"
  label: string;
  target: string | null;
}

export type Value = unknown;

export class FlowDoc {
  readonly doc: Document;
  readonly schema: Map<string, NodeType>;

  constructor(text: string, types: NodeType[]) {
    this.doc = parseDocument(text);
    this.schema = new Map(types.map((t) => [t.name, t]));
  }

  toString(): string {
    return this.doc.toString({ lineWidth: 0 });
  }

  get parseErrors(): string[] {
    return this.doc.errors.map((e) => e.message);
  }

  top(key: string): Value {
    const v = this.doc.get(key);
    return isNode(v) ? v.toJSON() : v;
  }

  setTop(key: string, value: Value): void {
    this.doc.set(key, value);
  }

  /** The node names, in the file's order. */
  get names(): string[] {
    const nodes = this.doc.get("nodes");
    return isMap(nodes)
      ? nodes.items.map((p) => String((p.key as { value?: unknown }).value ?? p.key))
      : [];
  }

  node(name: string): Record<string, Value> {
    const n = this.doc.getIn(["nodes", name]);
    return isMap(n) ? (n.toJSON() as Record<string, Value>) : {};
  }

  typeOf(name: string): NodeType | undefined {
    return this.schema.get(String(this.node(name)["type"] ?? ""));
  }

  /** Every exit of a node, with its target (null: not set). */
  exits(name: string): Exit[] {
    const spec = this.node(name);
    const type = this.typeOf(name);
    if (type === undefined) return [];
    const out: Exit[] = [];
    for (const f of type.fields) {
      const v = spec[f.key];
      if (f.kind === "node") {
        out.push({
          node: name,
          handle: f.key,
          label: f.key,
          target: typeof v === "string" ? v : null,
        });
      } else if (f.kind === "keys" && v !== null && typeof v === "object") {
        for (const [k, target] of Object.entries(v as Record<string, unknown>)) {
          out.push({
            node: name,
            handle: `${f.key}:${k}`,
            label: k,
            target: typeof target === "string" ? target : null,
          });
        }
      } else if (f.kind === "cases" && Array.isArray(v)) {
        v.forEach((c: unknown, i: number) => {
          const item = (c ?? {}) as { if?: unknown; goto?: unknown };
          out.push({
            node: name,
            handle: `${f.key}:${i}`,
            label: `if ${String(item.if ?? "")}`,
            target: typeof item.goto === "string" ? item.goto : null,
          });
        });
      }
    }
    return out;
  }

  /** Set a node's field; an empty value takes the field away. */
  setField(name: string, key: string, value: Value): void {
    if (value === undefined || value === null || value === "") {
      this.doc.deleteIn(["nodes", name, key]);
    } else {
      this.doc.setIn(["nodes", name, key], value);
    }
  }

  /** Point an exit (a handle as in ``Exit``) at ``target`` (null: nowhere). */
  connect(name: string, handle: string, target: string | null): void {
    const [key, sub] = handle.split(":", 2) as [string, string | undefined];
    if (sub === undefined) {
      this.setField(name, key, target);
    } else if (key === "cases") {
      this.doc.setIn(["nodes", name, "cases", Number(sub), "goto"], target ?? "");
    } else {
      this.doc.setIn(["nodes", name, key, sub], target ?? "");
    }
  }

  addNode(name: string, type: NodeType): void {
    const spec: Record<string, Value> = { type: type.name };
    if (type.name === "hangup") spec["text"] = "";
    if (!isMap(this.doc.get("nodes"))) this.doc.set("nodes", new YAMLMap());
    this.doc.setIn(["nodes", name], this.doc.createNode(spec));
    if (type.name === "hangup") this.doc.deleteIn(["nodes", name, "text"]);
  }

  /** Take a node away; the exits that led to it are left pointing at it, so the check
   * marks them (the editor shows where the flow is broken rather than guessing). */
  removeNode(name: string): void {
    this.doc.deleteIn(["nodes", name]);
  }

  /** A name for a new node of ``type`` not yet taken. */
  freshName(type: string): string {
    const taken = new Set(this.names);
    for (let i = 1; ; i++) {
      const name = `${type}_${i}`;
      if (!taken.has(name)) return name;
    }
  }

  /** A keys field's entries (key → target), a cases field's, a map field's, as pairs. */
  entries(name: string, key: string): [string, string][] {
    const v = this.doc.getIn(["nodes", name, key]);
    if (isMap(v)) {
      return v.items.map((p) => [
        String((p.key as { value?: unknown }).value ?? p.key),
        String((p.value as { value?: unknown } | null)?.value ?? ""),
      ]);
    }
    if (isSeq(v)) {
      return (v.toJSON() as { if?: unknown; goto?: unknown }[]).map((c) => [
        String(c.if ?? ""),
        String(c.goto ?? ""),
      ]);
    }
    return [];
  }

  setEntries(name: string, key: string, rows: [string, string][], asCases: boolean): void {
    if (rows.length === 0) {
      this.doc.deleteIn(["nodes", name, key]);
      return;
    }
    const value = asCases
      ? rows.map(([cond, goto]) => ({ if: cond, goto }))
      : Object.fromEntries(rows);
    this.doc.setIn(["nodes", name, key], this.doc.createNode(value, { flow: !asCases }));
  }
}

export const EMPTY_FLOW = (name: string): string =>
  `flow: ${name}\ndnis: []\nlanguage: en\nstart: start\nnodes:\n  start:\n    type: hangup\n    text: "Goodbye."\n`;
