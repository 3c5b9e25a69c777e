/** A template that does not compile; line and column are 1-based when known. */
export class TemplateError extends Error {
  line?: number;
  column?: number;

  constructor(message: string, location?: { line: number | undefined; column: number | undefined }, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TemplateError';
    if (location?.line !== undefined) this.line = location.line;
    if (location?.column !== undefined) this.column = location.column;
  }
}

/** Where in the template something went wrong, 1-based. */
export interface TemplateLocation {
  line: number;
  column: number;
}

/** Thrown by a helper while rendering; renderRow turns it into a RenderFailure. */
export class HelperError extends Error {
  readonly helper: string;
  readonly location: TemplateLocation | undefined;

  constructor(helper: string, message: string, location: TemplateLocation | undefined) {
    super(message);
    this.name = 'HelperError';
    this.helper = helper;
    this.location = location;
  }
}

/** A template path that resolved to nothing. */
export class MissingFieldError extends Error {
  readonly path: string;
  readonly location: TemplateLocation | undefined;

  constructor(path: string, message: string, location: TemplateLocation | undefined) {
    super(message);
    this.name = 'MissingFieldError';
    this.path = path;
    this.location = location;
  }
}

export function describeLocation(location: TemplateLocation | undefined): string {
  return location === undefined ? 'template' : `template line ${location.line}, column ${location.column}`;
}
