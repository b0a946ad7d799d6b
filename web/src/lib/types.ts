// The shapes the node's API answers with (see docs/api.md and /openapi.json).

export interface Me {
  id: number;
  login: string;
  full_name: string;
  roles: string[];
  extension: string | null;
  language: string | null;
}

export type AgentStateName = "logged_out" | "ready" | "not_ready" | "offered" | "busy" | "wrap_up";

export interface Agent {
  extension: string;
  state: AgentStateName;
  reason: string | null;
  queues: string[];
  groups: string[];
  phone_registered: boolean;
  from_desktop: boolean;
  reasons?: string[];
  /** The wrap-up codes a call may be given (the center's). */
  dispositions?: string[];
  since?: string | null;
}

export interface Call {
  id: number;
  ani: string;
  dnis: string;
  state: string;
  direction: string;
  agent: string | null;
  queue: string | null;
  flow: string | null;
  customer_id: number | null;
  arrived_at: string;
  on_hold: boolean;
  muted: boolean;
  recording: boolean;
  recording_paused: boolean;
  consult: string | null;
  consult_answered: boolean;
  conference: string | null;
  disposition: string | null;
  monitor: string | null;
  monitor_mode: "listen" | "whisper" | "barge" | null;
  monitor_answered: boolean;
}

export interface Reminder {
  kind: string;
  due_on: string;
  yearly: boolean;
  text: string;
}

/** A customer that may be the caller (several share the number), or a search hit. */
export interface Candidate {
  customer_id: number;
  name: string;
  segment: string;
  match: string;
  score: number;
}

export interface Contact {
  started_at: string;
  channel: string;
  direction: string;
  queue: string | null;
  disposition: string | null;
  notes: string | null;
  agent: string | null;
}

/** What the call.offered event carries: the screen pop. */
/** A campaign call's part of the screen pop. */
export interface CampaignPop {
  id: number;
  name: string;
  /** The attempt the script's answers belong to. */
  attempt: number;
  /** The script (a survey graph), if the campaign has one. */
  survey: number | null;
  contact: { name: string | null; variables: Record<string, string> };
}

export interface ScriptQuestion {
  key: string;
  text: string;
  kind: "choice" | "text" | "number";
  options?: { value: string; label: string }[];
}

export interface Offer {
  call: number;
  /** When the node published the offer (Unix seconds). */
  at: number;
  agent: string;
  ani: string;
  dnis: string;
  service: string | null;
  queue: string | null;
  waited_ms: number;
  ivr_path: string[];
  authorized: boolean;
  region: string | null;
  customer: {
    id: number;
    name: string;
    segment: string;
    kind: string;
    region: string | null;
  } | null;
  candidates: Candidate[];
  reminders_due: Reminder[];
  last_contacts: Contact[];
  campaign?: CampaignPop;
}

export interface Card {
  id: number;
  kind: string;
  name: string;
  segment: string;
  manager_id: number | null;
  manager_name: string | null;
  group_id: number | null;
  region: string | null;
  birthday: string | null;
  email: string | null;
  notes: string;
  phones: { e164: string; label: string }[];
  addresses: { kind: string; text: string }[];
  accounts: {
    contract_no: string;
    balance: string;
    currency: string;
    locked_until: string | null;
  }[];
  reminders_due: Reminder[];
}

export interface HistoryItem {
  id: number;
  channel: string;
  direction: string;
  started_at: string;
  ended_at: string | null;
  queue: string | null;
  agent_id: number | null;
  disposition: string | null;
  notes: string | null;
  recording_id: number | null;
  case_id: number | null;
}

export interface Directory {
  operators: {
    extension: string;
    name: string;
    state: AgentStateName;
    reason: string | null;
    queues: string[];
  }[];
  queues: string[];
  flows: string[];
}

export interface LiveEvent {
  seq: number;
  type: string;
  at: number;
  [key: string]: unknown;
}

export interface Product {
  id: number;
  sku: string;
  name: string;
  unit: string;
  price: string;
  currency: string;
  stock: number;
}

export interface Order {
  id: number;
  customer_id: number;
  status: string;
  address: string;
  delivery_date: string;
  delivery_slot: string;
  total: string;
  currency: string;
  note: string;
  created_at: string;
  next: string[];
  items: { product_id: number; name: string; unit: string; quantity: number; price: string }[];
}

export interface CaseSummary {
  id: number;
  kind: string;
  status: string;
  subject: string;
  topic_id: number | null;
  created_at: string;
  due_at: string | null;
  resolved_at: string | null;
  next: string[];
}

export interface Topic {
  id: number;
  name: string;
  parent_id: number | null;
}

export interface KbHit {
  id: number;
  language: string;
  title: string;
  snippet: string;
}

export interface Article {
  id: number;
  language: string;
  title: string;
  body: string;
  tags: string[];
  version: number;
}

export type Label = string | Partial<Record<"ru" | "en" | "zh", string>>;

export interface ScenarioField {
  name: string;
  label: Label;
  type: "text" | "number" | "date" | "choice" | "boolean";
  required: boolean;
  default: string | null;
  choices: string[] | null;
  pattern: string | null;
  max_length: number;
}

export interface Scenario {
  name: string;
  version: number;
  title: Label;
  topic: string;
  topic_id: number;
  needs_customer: boolean;
  registration: string;
  registration_fields: string[];
  needs_authorization: boolean;
  pin_flow: string | null;
  match: { dnis: string[]; ivr: string[] };
  form: ScenarioField[];
  actions: { name: string; label: Label; method: string; show: string[] | null }[];
  apps: { label: Label; url: string }[];
}

export interface ActionResult {
  status: number | null;
  answer: unknown;
  error: string | null;
  elapsed_ms: number;
}

export interface Announcement {
  id: number;
  text: string;
  author: string | null;
  created_at: string;
  expires_at: string;
}

export interface Workbench {
  tasks: {
    id: number;
    kind: string;
    due_at: string;
    case_id: number | null;
    customer_id: number | null;
    subject: string | null;
    customer_name: string | null;
  }[];
  cases: { id: number; kind: string; status: string; subject: string; due_at: string | null }[];
  reminders: {
    id: number;
    kind: string;
    due_on: string;
    text: string;
    customer_id: number;
    customer_name: string;
  }[];
  agenda: { id: number; at: string; text: string }[];
  announcements: Announcement[];
}

export interface Employee {
  id: number;
  full_name: string;
  extension: string | null;
  unit: string | null;
  roles: string[];
  state: string | null;
}

export interface SurveyResponse {
  id: number;
  survey: string;
  interaction_id: number | null;
  started_at: string;
  completed_at: string | null;
  answers: number;
}

/** The utility's records of a customer (seed 003): ``GET /api/customers/{id}/utility``. */
export interface MeterReading {
  id: number;
  day_kwh: number;
  night_kwh: number | null;
  taken_at: string;
  channel: string;
  entered_by: string | null;
}

export interface Outage {
  id: number;
  ref: string | null;
  kind: string;
  locality: string;
  street: string | null;
  house_from: number | null;
  house_to: number | null;
  starts_at: string;
  expected_end: string;
  ended_at: string | null;
  reason: string;
  current: boolean;
}

export interface ServicePoint {
  contract_no: string;
  address: string;
  tariff: { code: string; name: string; zones: number };
  meter: string | null;
  readings: MeterReading[];
  outages: Outage[];
}

export interface ConnectionRequest {
  number: string;
  address: string;
  power_kw: string;
  stage: string;
  submitted_at: string;
  due_on: string | null;
  next_stage: string | null;
  stages: { stage: string; at: string; note: string; by: string | null }[];
}

export interface CustomerUtility {
  service_points: ServicePoint[];
  connection_requests: ConnectionRequest[];
}

/** An e-mail thread (a case with mail in it), as the Mail tab lists it. */
export interface MailThreadSummary {
  case_id: number;
  subject: string;
  status: string;
  kind: string;
  topic_id: number | null;
  topic: string | null;
  customer_id: number | null;
  customer: string | null;
  last_direction: "in" | "out";
  from: string;
  from_name: string;
  last_at: string;
  due_at: string | null;
  messages: number;
}

export interface MailAttachment {
  id: number;
  filename: string;
  content_type: string;
  size: number;
}

export interface MailMessage {
  id: number;
  direction: "in" | "out";
  message_id: string;
  from: string;
  from_name: string;
  to: string[];
  cc: string[];
  subject: string;
  text: string;
  sent_at: string | null;
  received_at: string;
  state: "received" | "queued" | "sent" | "failed";
  error: string | null;
  written_by: string | null;
  attachments: MailAttachment[];
}

export interface MailThread {
  case: CaseSummary & { customer_id: number | null; confidential: boolean };
  customer: { id: number; name: string; email: string | null } | null;
  messages: MailMessage[];
}
