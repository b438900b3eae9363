import { CompiledQuery } from 'kysely';
import type { Dialect } from './store.js';

/**
 * One SQL text with `:named` parameters, converted once per dialect to positional form. The lease path
 * and the SIP hand-off's VoiceCall writes run these directly rather than through Kysely's query builder: building and compiling a query costs
 * tens of microseconds each time, a real share of a reservation's budget (chosen for speed).
 */
export class Statement {
  private readonly forms: Record<Dialect, { text: string; names: string[]; query: CompiledQuery['query'] }>;

  constructor(text: string) {
    const names: string[] = [];
    const sqlite = text.replace(/:([a-z_][a-z0-9_]*)/g, (_, name: string) => {
      names.push(name);
      return '?';
    });
    const pgNames: string[] = [];
    const postgres = text.replace(/:([a-z_][a-z0-9_]*)/g, (_, name: string) => {
      let i = pgNames.indexOf(name);
      if (i < 0) i = pgNames.push(name) - 1;
      return `$${i + 1}`;
    });
    this.forms = {
      sqlite: { text: sqlite, names, query: CompiledQuery.raw(sqlite).query },
      postgres: { text: postgres, names: pgNames, query: CompiledQuery.raw(postgres).query },
    };
  }

  /**
   * The query to execute. Built by hand rather than with CompiledQuery.raw, which freezes a new node
   * tree and makes a query id for every execution: drivers read only `sql` and `parameters`, and this
   * store uses no Kysely plugin that would read the rest (chosen for speed).
   */
  compile(dialect: Dialect, params: Record<string, unknown>): CompiledQuery {
    const form = this.forms[dialect];
    const names = form.names;
    const parameters: unknown[] = new Array(names.length);
    for (let i = 0; i < names.length; i++) {
      const v = params[names[i]!];
      if (v === undefined) throw new Error(`missing SQL parameter :${names[i]}`);
      parameters[i] = v;
    }
    return { sql: form.text, query: form.query, parameters, queryId: STATEMENT_QUERY_ID };
  }
}

/** Shared by every Statement execution (see Statement.compile). */
const STATEMENT_QUERY_ID = CompiledQuery.raw('').queryId;

