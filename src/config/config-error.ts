/** Configuration that cannot be used (the file, or an environment setting); `message` names the field at fault. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
