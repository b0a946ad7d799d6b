// Message catalogs (ru, en, zh) and the locale's forms of dates, times and money. The
// language is the user's setting, else the browser's. Every catalog has every key of the
// English one (the compiler checks it); a key missing at run time shows as ⟦key⟧, which
// the browser tests look for on every screen.

import { en, type MessageKey } from "./catalogs/en";
import { ru } from "./catalogs/ru";
import { zh } from "./catalogs/zh";

export const LANGUAGES = ["ru", "en", "zh"] as const;
export type Language = (typeof LANGUAGES)[number];

const CATALOGS: Record<Language, Record<MessageKey, string>> = { en, ru, zh };
const LOCALES: Record<Language, string> = { en: "en-GB", ru: "ru-RU", zh: "zh-CN" };

export function browserLanguage(): Language {
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = tag.toLowerCase().split("-")[0];
    const hit = LANGUAGES.find((l) => l === base);
    if (hit !== undefined) return hit;
  }
  return "en";
}

class I18n {
  language = $state<Language>(browserLanguage());

  set(language: string | null): void {
    const hit = LANGUAGES.find((l) => l === language);
    this.language = hit ?? browserLanguage();
    document.documentElement.lang = this.language;
  }

  get locale(): string {
    return LOCALES[this.language];
  }
}

export const i18n = new I18n();

/** The message for ``key`` in the current language, with {name} filled from ``vars``. */
export function t(key: MessageKey, vars: Record<string, string | number> = {}): string {
  const text = CATALOGS[i18n.language][key] ?? `⟦${key}⟧`;
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? `{${name}}`));
}

/** A value the node names (a state, a reason, a channel): its translation when the
 * catalog has one, else the name itself (a center's own Not ready reasons are data). */
export function label(prefix: string, value: string): string {
  const key = `${prefix}.${value}`;
  const catalog: Record<string, string> = CATALOGS[i18n.language];
  return catalog[key] ?? value;
}

// A Date here is only read once to format it, never kept: no reactive SvelteDate needed.
/* eslint-disable svelte/prefer-svelte-reactivity */
/** A text the node's data gives in one language or several (a scenario's labels). */
export function text(value: string | Partial<Record<Language, string>>): string {
  if (typeof value === "string") return value;
  return value[i18n.language] ?? value.en ?? Object.values(value)[0] ?? "";
}

export function dateTime(iso: string): string {
  return new Intl.DateTimeFormat(i18n.locale, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(iso),
  );
}

/** A moment to the second (an alarm raised and cleared within a minute). */
export function moment(iso: string): string {
  return new Intl.DateTimeFormat(i18n.locale, { dateStyle: "short", timeStyle: "medium" }).format(
    new Date(iso),
  );
}

export function day(iso: string): string {
  // a calendar day (YYYY-MM-DD) is no instant: format it as a UTC date, so no zone shifts it
  return new Intl.DateTimeFormat(i18n.locale, { dateStyle: "medium", timeZone: "UTC" }).format(
    new Date(`${iso}T00:00:00Z`),
  );
}

/* eslint-enable svelte/prefer-svelte-reactivity */

export function money(amount: string, currency: string): string {
  try {
    return new Intl.NumberFormat(i18n.locale, { style: "currency", currency }).format(
      Number(amount),
    );
  } catch {
    return `${amount} ${currency}`;
  }
}

/** Seconds as m:ss (or h:mm:ss). */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}
