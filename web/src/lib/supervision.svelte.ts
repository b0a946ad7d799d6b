// The supervisor's console state (seed 004, 班长座席): queues with their figures, operators,
// calls in progress, trunks and phones, alarms. Loaded over REST, then kept current from
// the live event stream (queue.snapshot, agent.state, call.*, alarm.*) without reloading.

import { api, ApiError } from "./api";
import { LiveStream } from "./events.svelte";
import type { Agent, AgentStateName, Call, LiveEvent } from "./types";

export interface QueueNow {
  queue: string;
  waiting: number;
  ringing: number;
  oldest_wait_ms: number;
  agents: Partial<Record<AgentStateName, number>>;
  estimated_wait_seconds: number | null;
  service_level_threshold_seconds: number;
  service_level_target: number;
  offered_today: number;
  answered_today: number;
  abandoned_today: number;
  service_level_today: number | null;
  abandon_rate_today: number | null;
  asa_seconds_today: number | null;
  aht_seconds_today: number | null;
  offered_15m: number;
  service_level_15m: number | null;
  abandon_rate_15m: number | null;
  asa_seconds_15m: number | null;
}

export interface AgentRow extends Agent {
  name: string;
  since: string | null;
}

export interface Alarm {
  id: number | null;
  kind: string;
  subject: string;
  detail: Record<string, unknown>;
  raised_at: string;
  cleared_at: string | null;
}

export interface TrunkLine {
  name: string;
  host: string;
  port: number;
  transport: string;
  outbound: boolean;
  probed: boolean;
  up: boolean | null;
  calls: number;
}

export interface PhoneLine {
  extension: string;
  name: string;
  registered: boolean;
  contacts: { transport: string; source: string; user_agent: string; expires_in: number }[];
}

/** Green, amber or red for a wallboard tile (seed 004: 颜色标识). */
export type Level = "ok" | "warn" | "bad" | "none";

export function levelOfService(value: number | null, target: number): Level {
  if (value === null) return "none";
  if (value >= target) return "ok";
  return value >= target - 0.1 ? "warn" : "bad";
}

export function levelOfWait(seconds: number, threshold: number): Level {
  if (seconds <= 0) return "ok";
  if (seconds <= threshold) return "warn";
  return "bad";
}

export function levelOfWaiting(waiting: number): Level {
  return waiting === 0 ? "ok" : waiting < 5 ? "warn" : "bad";
}

export function levelOfAbandon(rate: number | null): Level {
  if (rate === null) return "none";
  return rate < 0.05 ? "ok" : rate < 0.1 ? "warn" : "bad";
}

export class Console {
  queues = $state<QueueNow[]>([]);
  agents = $state<AgentRow[]>([]);
  calls = $state<Call[]>([]);
  alarms = $state<Alarm[]>([]);
  alarmLog = $state<Alarm[]>([]);
  trunks = $state<TrunkLine[]>([]);
  phones = $state<PhoneLine[]>([]);
  notice = $state<string | null>(null);
  readonly stream = new LiveStream();
  private stops: (() => void)[] = [];
  // one request per kind at a time: a burst of events costs one more load, not one each
  // (bookkeeping, never rendered: plain sets, not reactive ones)
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private loading = new Set<string>();
  // eslint-disable-next-line svelte/prefer-svelte-reactivity
  private again = new Set<string>();

  start(): void {
    this.stops.push(this.stream.on((e) => this.receive(e)));
    this.stops.push(this.stream.onResync(() => this.loadAll()));
    this.stream.open();
  }

  stop(): void {
    for (const s of this.stops) s();
    this.stops = [];
    this.stream.close();
  }

  loadAll(): void {
    for (const kind of ["queues", "agents", "calls", "alarms", "lines"]) void this.load(kind);
  }

  async load(kind: string): Promise<void> {
    if (this.loading.has(kind)) {
      this.again.add(kind);
      return;
    }
    this.loading.add(kind);
    try {
      do {
        this.again.delete(kind);
        await this.fetch(kind);
      } while (this.again.has(kind));
    } catch (e) {
      this.report(e);
    } finally {
      this.loading.delete(kind);
    }
  }

  private async fetch(kind: string): Promise<void> {
    if (kind === "queues") {
      this.queues = (await api<{ items: QueueNow[] }>("GET", "/api/queues")).items;
    } else if (kind === "agents") {
      this.agents = (await api<{ items: AgentRow[] }>("GET", "/api/agents")).items;
    } else if (kind === "calls") {
      this.calls = (await api<{ items: Call[] }>("GET", "/api/calls")).items;
    } else if (kind === "alarms") {
      const got = await api<{ active: Alarm[]; log: Alarm[] }>("GET", "/api/alarms");
      this.alarms = got.active;
      this.alarmLog = got.log;
    } else if (kind === "lines") {
      const got = await api<{ trunks: TrunkLine[]; phones: PhoneLine[] }>("GET", "/api/lines");
      this.trunks = got.trunks;
      this.phones = got.phones;
    }
  }

  private receive(e: LiveEvent): void {
    if (e.type === "queue.snapshot") {
      const snap = e as unknown as QueueNow;
      const i = this.queues.findIndex((q) => q.queue === snap.queue);
      if (i >= 0) this.queues[i] = snap;
      else this.queues = [...this.queues, snap].sort((a, b) => a.queue.localeCompare(b.queue));
    } else if (e.type === "agent.state") {
      const row = this.agents.find((a) => a.extension === e["agent"]);
      if (row === undefined) {
        void this.load("agents");
        return;
      }
      const state = e["state"] as AgentStateName;
      const reason = (e["reason"] as string | null) ?? null;
      if (row.state !== state || row.reason !== reason) {
        // eslint-disable-next-line svelte/prefer-svelte-reactivity -- formatted once, not kept
        row.since = new Date(e.at * 1000).toISOString();
      }
      row.state = state;
      row.reason = reason;
      if (state === "logged_out") void this.load("agents"); // its groups are gone
    } else if (e.type.startsWith("agent.")) {
      void this.load("agents"); // logged in to other groups
    } else if (e.type.startsWith("call.")) {
      void this.load("calls");
      if (e.type === "call.arrived" || e.type === "call.ended") void this.load("lines");
    } else if (e.type === "alarm.raised" || e.type === "alarm.cleared") {
      void this.load("alarms");
      if (e["kind"] === "trunk_down") void this.load("lines");
    }
  }

  /** Force an operator Ready, Not ready or logged out (seed 004: 强制示闲、示忙、签出). */
  async force(extension: string, state: "ready" | "not_ready" | "logged_out"): Promise<void> {
    this.notice = null;
    try {
      await api("PUT", `/api/agents/${encodeURIComponent(extension)}/state`, { state });
      await this.load("agents");
    } catch (e) {
      this.report(e);
    }
  }

  async monitor(call: Call, mode: "listen" | "whisper" | "barge" | "stop"): Promise<void> {
    this.notice = null;
    try {
      const path = mode === "stop" ? "monitor/stop" : "monitor";
      await api("POST", `/api/calls/${call.id}/${path}`, mode === "stop" ? undefined : { mode });
      await this.load("calls");
    } catch (e) {
      this.report(e);
    }
  }

  /** The call an operator is on now, if any. */
  callOf(extension: string): Call | undefined {
    return this.calls.find((c) => c.agent === extension);
  }

  report(e: unknown): void {
    this.notice = e instanceof ApiError ? e.message : String(e);
  }
}
