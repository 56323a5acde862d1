/**
 * compose.yaml as Docker Compose sees it, for test/container/compose.test.ts and run.sh: the project
 * normalized by compose-go (test/tools/build-compose.sh), the real-upstream variant uncommented, and
 * a service turned into `buildah run` arguments. Also a command line for run.sh (node runs this file
 * as it is; it imports nothing relative):
 *   node test/container/compose.ts normalize <compose.yaml>                       the project, JSON
 *   node test/container/compose.ts real-upstream <compose.yaml>                   the variant, YAML
 *   node test/container/compose.ts buildah-run <compose.yaml> <service> <container> <image CMD as JSON>
 *                                 `buildah run` arguments after `run`, each ended by NUL
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The parts of compose-go's normalized service this project uses (`docker compose config --format json`). */
export interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  pull_policy?: string;
  command?: string[] | null;
  entrypoint?: string[] | null;
  environment?: Record<string, string | null>;
  volumes?: { type: string; source: string; target: string; read_only?: boolean }[];
  ports?: { target: number; published?: string; protocol?: string; host_ip?: string; mode?: string }[];
  secrets?: { source: string; target: string }[];
  depends_on?: Record<string, { condition: string; required: boolean }>;
  restart?: string;
}

export interface ComposeProject {
  name: string;
  services: Record<string, ComposeService>;
  secrets?: Record<string, { name: string; file?: string }>;
}

/** The compose-go `compose-config` binary, built on first use and cached outside the repo. */
export function composeConfigBinary(): string {
  const out = execFileSync('bash', [join(repoRoot, 'test', 'tools', 'build-compose.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const bin = out.trim().split('\n').pop();
  if (bin === undefined || bin === '') throw new Error('build-compose.sh printed no binary path');
  return bin;
}

/** Loads, validates and normalizes a compose file as `docker compose config` does; throws with compose-go's message. */
export function normalize(file: string, bin = composeConfigBinary()): ComposeProject {
  try {
    const out = execFileSync(bin, ['-f', file], { cwd: dirname(file), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return JSON.parse(out) as ComposeProject;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr;
    throw new Error(`compose-go refused ${file}: ${stderr?.trim() || (error as Error).message}`, { cause: error });
  }
}

/** The comment line that opens a block of the real-upstream variant in compose.yaml. */
export const REAL_UPSTREAM_MARK = '# [real upstream]';

/**
 * compose.yaml with the real-upstream variant switched on, as a user does it: under each line that is
 * exactly the mark, the comment lines that follow at the mark's indentation lose their `# `.
 */
export function uncommentRealUpstream(text: string): string {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() !== REAL_UPSTREAM_MARK) continue;
    const indent = line.slice(0, line.indexOf('#'));
    for (let j = i + 1; j < lines.length && lines[j]!.startsWith(`${indent}# `); j++) {
      lines[j] = indent + lines[j]!.slice(indent.length + 2);
      i = j;
    }
  }
  return lines.join('\n');
}

/**
 * `buildah run` arguments that start one service of a normalized project as compose would: its
 * environment, bind mounts, secrets (read-only files under their targets) and command (else the
 * image's CMD), as the image's user. Networks and published ports are the caller's (run.sh).
 */
export function buildahRunArgs(project: ComposeProject, serviceName: string, container: string, imageCmd: readonly string[]): string[] {
  const service = project.services[serviceName];
  if (service === undefined) throw new Error(`no service ${serviceName} in ${project.name}`);
  if (service.entrypoint !== undefined && service.entrypoint !== null && service.entrypoint.length > 0)
    throw new Error(`${serviceName}: entrypoint is not supported here`);
  const args: string[] = [];
  for (const [name, value] of Object.entries(service.environment ?? {})) {
    if (value !== null) args.push('--env', `${name}=${value}`);
  }
  for (const volume of service.volumes ?? []) {
    if (volume.type !== 'bind') throw new Error(`${serviceName}: volume type ${volume.type} is not supported here`);
    args.push('-v', `${volume.source}:${volume.target}${volume.read_only === true ? ':ro' : ''}`);
  }
  for (const secret of service.secrets ?? []) {
    const file = project.secrets?.[secret.source]?.file;
    if (file === undefined) throw new Error(`${serviceName}: secret ${secret.source} is not a file secret`);
    args.push('-v', `${file}:${secret.target}:ro`);
  }
  const command = service.command !== undefined && service.command !== null && service.command.length > 0 ? service.command : imageCmd;
  return [...args, container, '--', ...command];
}

if (import.meta.main) {
  const [verb, file, ...rest] = process.argv.slice(2);
  if (file === undefined) throw new Error('usage: compose.ts normalize|real-upstream|buildah-run <compose.yaml> ...');
  if (verb === 'normalize') {
    process.stdout.write(`${JSON.stringify(normalize(resolve(file)), null, 2)}\n`);
  } else if (verb === 'real-upstream') {
    process.stdout.write(uncommentRealUpstream(readFileSync(file, 'utf8')));
  } else if (verb === 'buildah-run') {
    const [service, container, cmd] = rest;
    if (service === undefined || container === undefined || cmd === undefined)
      throw new Error('usage: compose.ts buildah-run <compose.yaml> <service> <container> <image CMD as JSON>');
    const args = buildahRunArgs(normalize(resolve(file)), service, container, JSON.parse(cmd) as string[]);
    process.stdout.write(args.map((arg) => `${arg}\0`).join(''));
  } else {
    throw new Error(`unknown command ${verb}`);
  }
}
