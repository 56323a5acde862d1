import { buildTools } from './build-tools.js';

/** The compose project: compose-config, compose-go's loader as a program (test/tools/build-compose.sh). */
export default function setup(): void {
  buildTools(['build-compose.sh']);
}
