// Errors the user should see as one clear message (no stack trace), and how the CLI exits.

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

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
