import { EngineUnavailableError, loadEngine, type Engine } from '../native/index.js';
import { UserError } from './user_error.js';

/** The native engine, or a clear error on a machine where it was never built. */
export function requireEngine(): Engine {
  try {
    return loadEngine();
  } catch (err) {
    if (err instanceof EngineUnavailableError) throw new UserError(err.message);
    throw err;
  }
}
