// The CRI's SecurityProfile (seccomp and AppArmor alike): RuntimeDefault,
// Unconfined, or a Localhost profile the node provides.
import type { SecurityProfile } from "../../proto/gen/cri/runtime/v1/SecurityProfile.js";

export type ProfileChoice<Localhost> = { kind: "unconfined" } | { kind: "runtime-default" } | Localhost;

/** The choice the field makes, undefined when it is unset. */
export function fromSecurityProfile<L>(profile: SecurityProfile | null | undefined, localhost: (ref: string) => L): ProfileChoice<L> | undefined {
  switch (profile?.profile_type) {
    case "RuntimeDefault":
      return { kind: "runtime-default" };
    case "Unconfined":
      return { kind: "unconfined" };
    case "Localhost":
      return localhost(profile.localhost_ref);
    default:
      return undefined;
  }
}
