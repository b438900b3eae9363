import type SQLite from 'better-sqlite3';

/**
 * For a store's helper thread (checkpoints, reads): ends the thread, closing its connection, once
 * `ms` pass without a call of the returned function; call it after each piece of work.
 */
export function exitWhenIdle(db: SQLite.Database, ms: number): () => void {
  let idle: NodeJS.Timeout | undefined;
  const stop = (): void => {
    try {
      db.close();
    } catch {
      // The file may be gone already (a test's temporary directory): nothing left to do.
    }
    process.exit(0);
  };
  const touch = (): void => {
    if (idle) clearTimeout(idle);
    idle = setTimeout(stop, ms);
  };
  touch();
  return touch;
}
