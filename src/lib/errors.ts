/**
 * One error base for everything Tapestry throws outside the data path.
 * Callers branch on `code`, never on message text. The data path itself never
 * throws: it drops and counts (see datapath/drops.ts).
 */
export class TapestryError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}
