// The operator's desktop state, kept from the REST API and the live event stream: the
// operator's ACD state, the current call, its screen pop and the customer's card.

import { tick } from "svelte";
import { api, ApiError } from "./api";
import { LiveStream } from "./events.svelte";
import { Phone } from "./phone.svelte";
import type {
  Agent,
  Call,
  Candidate,
  Card,
  HistoryItem,
  LiveEvent,
  Me,
  Offer,
  SurveyResponse,
} from "./types";

const HISTORY_PAGE = 10;

export class Desk {
  readonly me: Me;
  readonly stream = new LiveStream();
  /** The browser's own phone (registered while the desktop is open). */
  readonly phone = new Phone();
  agent = $state<Agent | null>(null);
  /** When the current state began (ms, this browser's clock). */
  stateSince = $state(Date.now());
  /** When wrap-up ends (ms), while in wrap-up. */
  wrapUpEndsAt = $state<number | null>(null);
  /** A Not ready asked during the call: it applies after the call. */
  pending = $state<string | null>(null);
  call = $state<Call | null>(null);
  /** The last call the operator was on (its wrap-up code may come after it ended). */
  lastCallId = $state<number | null>(null);
  /** The wrap-up code given to that call, once the node took it. */
  disposed = $state<string | null>(null);
  offer = $state<Offer | null>(null);
  callStartedAt = $state<number | null>(null);
  callEnded = $state(false);
  card = $state<Card | null>(null);
  history = $state<HistoryItem[]>([]);
  historyNext = $state<string | null>(null);
  surveys = $state<SurveyResponse[]>([]);
  searchHits = $state<Candidate[] | null>(null);
  notice = $state<string | null>(null);
  /** The description of the case being written (the KB panel pastes answers into it). */
  caseDescription = $state("");
  now = $state(Date.now());
  private ticker: ReturnType<typeof setInterval> | null = null;
  private stops: (() => void)[] = [];

  constructor(me: Me) {
    this.me = me;
  }

  get extension(): string {
    return this.me.extension ?? "";
  }

  async start(): Promise<void> {
    this.stops.push(this.stream.on((e) => this.onEvent(e)));
    this.stops.push(this.stream.onResync(() => void this.reload()));
    this.stream.open(); // its first heartbeat loads the state (so no event falls between)
    void this.phone.start();
    this.ticker = setInterval(() => (this.now = Date.now()), 500);
  }

  stop(): void {
    for (const s of this.stops) s();
    this.stops = [];
    if (this.ticker !== null) clearInterval(this.ticker);
    this.stream.close();
    this.phone.stop();
  }

  /** Everything again from the API (at start, and when the stream lost events). */
  async reload(): Promise<void> {
    await this.loadAgent();
    await this.loadCall();
    if (performance.getEntriesByName("ccorch:interactive").length === 0) {
      await tick();
      // User Timing: when the desktop first showed the operator's state (benches read it)
      performance.mark("ccorch:interactive");
    }
  }

  async loadAgent(): Promise<void> {
    const agent = await api<Agent>("GET", "/api/agent");
    if (this.agent?.state !== agent.state || this.agent?.reason !== agent.reason) {
      this.stateSince = agent.since ? Date.parse(agent.since) : Date.now();
    }
    this.agent = {
      ...agent,
      reasons: agent.reasons ?? this.agent?.reasons ?? [],
      dispositions: agent.dispositions ?? this.agent?.dispositions ?? [],
    };
    if (agent.state !== "wrap_up") this.wrapUpEndsAt = null;
  }

  async loadCall(): Promise<void> {
    const { items } = await api<{ items: Call[] }>("GET", "/api/calls");
    const ext = this.extension;
    const mine = items.find((c) => c.agent === ext || c.consult === ext || c.conference === ext);
    if (mine !== undefined) {
      if (this.call?.id !== mine.id) {
        this.callEnded = false;
        this.callStartedAt ??= Date.now();
      }
      if (this.lastCallId !== mine.id) this.disposed = null;
      this.call = mine;
      this.lastCallId = mine.id;
    } else if (this.call !== null) {
      this.call = null;
      this.callEnded = true;
    }
  }

  private onEvent(e: LiveEvent): void {
    const ext = this.extension;
    if (e.type.startsWith("agent.") && e["agent"] === ext) {
      if (e.type === "agent.state") {
        const state = String(e["state"]);
        const reason = (e["reason"] as string | null) ?? null;
        if (this.agent === null || this.agent.state !== state || this.agent.reason !== reason) {
          this.stateSince = Date.now();
        }
        this.wrapUpEndsAt =
          state === "wrap_up" ? Date.now() + Number(e["ends_in_seconds"] ?? 0) * 1000 : null;
        if (state !== "busy" && state !== "offered") this.pending = null;
      }
      void this.loadAgent();
      return;
    }
    if (e.type === "call.offered" && e["agent"] === ext) {
      void this.popScreen(e as unknown as Offer);
      return;
    }
    if (e.type === "acd.offer_revoked" && e["agent"] === ext && this.offer?.call === e["call"]) {
      this.offer = null;
      this.card = null;
      return;
    }
    if (
      e.type.startsWith("call.") &&
      (e["call"] === this.offer?.call ||
        e["call"] === this.call?.id ||
        // a call the operator placed (preview, click-to-dial) rings or reaches their phone
        e["target"] === ext)
    ) {
      if (e.type === "call.answered" && e["target"] === ext) this.callStartedAt = Date.now();
      void this.loadCall();
    }
  }

  /** The screen pop: the offer's details at once, then the whole card. */
  async popScreen(offer: Offer): Promise<void> {
    this.offer = offer;
    this.callEnded = false;
    this.callStartedAt = null;
    this.searchHits = null;
    this.card = null;
    this.history = [];
    this.historyNext = null;
    const id = offer.customer?.id;
    await this.loadCall();
    if (id !== undefined) await this.openCard(id);
    await tick();
    // User Timing: the offer's publication (node clock) to the card on screen (benches)
    performance.mark("ccorch:screen-pop", { detail: { call: offer.call, at: offer.at } });
  }

  async openCard(customerId: number): Promise<void> {
    try {
      this.card = await api<Card>("GET", `/api/customers/${customerId}`);
      this.searchHits = null;
      const page = await api<{ items: HistoryItem[]; next_before: string | null }>(
        "GET",
        `/api/customers/${customerId}/history?limit=${HISTORY_PAGE}`,
      );
      this.history = page.items;
      this.historyNext = page.next_before;
      this.surveys = (
        await api<{ items: SurveyResponse[] }>("GET", `/api/customers/${customerId}/surveys`)
      ).items;
    } catch (e) {
      this.report(e);
    }
  }

  async moreHistory(): Promise<void> {
    if (this.card === null || this.historyNext === null) return;
    const page = await api<{ items: HistoryItem[]; next_before: string | null }>(
      "GET",
      `/api/customers/${this.card.id}/history?limit=${HISTORY_PAGE}&before=${encodeURIComponent(this.historyNext)}`,
    );
    this.history = [...this.history, ...page.items];
    this.historyNext = page.next_before;
  }

  async search(q: string): Promise<void> {
    if (!q.trim()) return;
    const { matches } = await api<{ matches: Candidate[] }>(
      "GET",
      `/api/customers/search?q=${encodeURIComponent(q)}&limit=10`,
    );
    this.searchHits = matches;
  }

  closeCard(): void {
    this.card = null;
    this.history = [];
    if (this.call === null) this.offer = null;
  }

  // --- the operator's state ---

  async setState(state: "ready" | "not_ready", reason?: string): Promise<void> {
    const during = this.agent?.state === "busy" || this.agent?.state === "offered";
    const reply = await this.stream.command("agent.state", reason ? { state, reason } : { state });
    if (this.check(reply) && during) this.pending = state === "not_ready" ? (reason ?? null) : null;
    await this.loadAgent();
  }

  async wrapUp(action: "end" | "extend"): Promise<void> {
    this.check(await this.stream.command("agent.wrap_up", { action }));
  }

  // --- call control (the same commands the REST API has) ---

  async command(name: string, fields: Record<string, unknown> = {}): Promise<boolean> {
    const id = this.call?.id ?? this.offer?.call;
    if (id === undefined) return false;
    const reply = await this.stream.command(name, { call: id, ...fields });
    const ok = this.check(reply);
    if (ok && reply["call"]) this.call = reply["call"] as Call;
    return ok;
  }

  /** The wrap-up code of the current or last call, with a note, and "call back at" (ISO
   * 8601 with the offset; personal: this operator makes the callback). */
  async dispose(
    code: string,
    note: string,
    callback: { at: string; personal: boolean } | null,
  ): Promise<boolean> {
    const id = this.call?.id ?? this.lastCallId;
    if (id === null) return false;
    const fields: Record<string, unknown> = { call: id, code };
    if (note.trim()) fields["note"] = note.trim();
    if (callback !== null) {
      fields["callback_at"] = callback.at;
      fields["personal"] = callback.personal;
    }
    const ok = this.check(await this.stream.command("disposition", fields));
    if (ok) this.disposed = code;
    return ok;
  }

  /** Tell the node which customer the caller is (the call's record names them). */
  async callerIs(customerId: number): Promise<void> {
    if (this.call === null) return; // only while the call is up
    const reply = await this.stream.command("customer", {
      call: this.call.id,
      customer_id: customerId,
    });
    this.check(reply);
  }

  async dial(number: string): Promise<void> {
    try {
      await api("POST", "/api/calls", { number });
    } catch (e) {
      this.report(e);
    }
  }

  private check(reply: Record<string, unknown>): boolean {
    const status = Number(reply["status"]);
    if (status >= 200 && status < 300) return true;
    const fields = reply["fields"] as Record<string, string> | undefined;
    const detail = fields ? Object.values(fields).join("; ") : "";
    this.notice =
      String(reply["message"] ?? reply["error"] ?? status) + (detail ? `: ${detail}` : "");
    return false;
  }

  report(e: unknown): void {
    this.notice = e instanceof ApiError || e instanceof Error ? e.message : String(e);
  }
}
