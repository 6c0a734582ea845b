/**
 * The directory of a local registry file, and of the host-local CA the nodes keep beside it,
 * decides which nodes an app's calls reach: whoever can write a row in the registry receives
 * calls for that app id, and whoever can read the CA's issuer key can mint any identity. So the
 * directory belongs to one user. It is created 0700 (the default, `~/.weft`, is under the user's
 * own home, so each user of a host has a registry of their own), and a directory another user
 * owns, or one that is group- or world-writable, is refused with a config error instead of being
 * shared by accident. Several users who mean to share one registry give every node the same
 * `--registry` in a directory one of them owns (and run the nodes as that user).
 */
import { mkdirSync, statSync } from 'node:fs';
import { WeftError } from '../errors.ts';

/** Creates `dir` (0700) if missing; throws WEFT_CONFIG naming `field` if it is not this user's alone. */
export function claimRegistryDir(dir: string, field: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const uid = process.getuid?.();
  if (uid === undefined) return; // no POSIX owners (Windows)
  const st = statSync(dir);
  if (st.uid !== uid) {
    throw new WeftError('WEFT_CONFIG', `${field}: the registry directory ${dir} belongs to another user (uid ${st.uid}, this is uid ${uid}); each user keeps a registry of their own (the default is ~/.weft), so give --registry a path in a directory you own`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new WeftError('WEFT_CONFIG', `${field}: the registry directory ${dir} is ${(st.mode & 0o002) !== 0 ? 'world' : 'group'}-writable (mode ${(st.mode & 0o777).toString(8)}): another user could register nodes that receive this user's calls; make it private (chmod 700 ${dir}) or give --registry a path in a private directory`);
  }
}
