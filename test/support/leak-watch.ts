/**
 * Every secret and token the test servers hand out, and every log line the proxy writes, in
 * this test file's process. A setup file checks after each test file that no secret string
 * appears in any log line: the "never logged" promise is tested over the whole suite.
 */
const secrets = new Set<string>();
const logLines: string[] = [];

export function watchSecret(value: string | undefined): void {
  // Very short strings would match by accident and prove nothing.
  if (value && value.length >= 6) secrets.add(value);
}

export function recordLog(line: string): void {
  logLines.push(line);
}

export function allLogLines(): readonly string[] {
  return logLines;
}

/** Secrets found in the captured logs, as "secret … found in: line" descriptions. */
export function leaksInLogs(): string[] {
  const leaks: string[] = [];
  for (const secret of secrets) {
    const variants = [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64')];
    for (const line of logLines) {
      if (variants.some((v) => line.includes(v))) {
        leaks.push(`secret ${secret.slice(0, 4)}… found in log line: ${line.slice(0, 300)}`);
        break;
      }
    }
  }
  return leaks;
}

export function watchedSecretCount(): number {
  return secrets.size;
}
