// Errors the user should see as one clear message (no stack trace), and the exit codes they carry.
// They live in util/ because every layer throws them; only the CLI catches and prints them.

/** An error caused by the user's input or environment; printed as `loom: error: <message>`. */
export class LoomError extends Error {
  constructor(
    message: string,
    /** Process exit code; 1 for failures, 2 for usage errors and unbuilt stages. */
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'LoomError';
  }
}

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
