/** Job priorities and their ranks: the one definition the queue and the orchestrator's eviction share. */

export type Priority = "immediate" | "interactive" | "preload" | "background";

/** The priorities, highest first. */
export const PRIORITIES: readonly Priority[] = Object.freeze(["immediate", "interactive", "preload", "background"] as const);

/** Rank of each priority: higher runs first and may evict lower (immediate 3 … background 0). */
export const PRIORITY_RANK: Readonly<Record<Priority, number>> = Object.freeze({ immediate: 3, interactive: 2, preload: 1, background: 0 });

/** The priority of a job or resource that gives none. */
export const DEFAULT_PRIORITY: Priority = "interactive";
