"""Renewals with the generation counter: each renewal of a bot's (or a node's) renewable identity bumps its
generation, and a certificate of any other generation (a copy renewing after the original) locks the bot or node."""

from __future__ import annotations

from datetime import timedelta

from machineid.api import certs
from machineid.cluster import holders, instances
from machineid.cluster.access import stale_identity
from machineid.cluster.caller import Caller
from machineid.cluster.holders import Holder
from machineid.cluster.issuance import Grant, IssuedCerts, Issuer, public_key
from machineid.cluster.objects import Objects
from machineid.cluster.records import LastRenewal
from machineid.model import codec, keys
from machineid.model.errors import PermissionDeniedError, UnauthenticatedError
from machineid.model.grants import MAX_RENEWABLE_TTL
from machineid.model.instances import Heartbeat


class Renewals:
    def __init__(self, objects: Objects, issuer: Issuer) -> None:
        self.objects = objects
        self.issuer = issuer

    def renew(self, caller: Caller, public_key_pem: str, ttl: timedelta | None,
              heartbeat: Heartbeat | None = None) -> IssuedCerts:
        return self.renew_identity(caller, public_key_pem, ttl, heartbeat)[0]

    def renew_identity(self, caller: Caller, public_key_pem: str, ttl: timedelta | None,
                       heartbeat: Heartbeat | None = None) -> tuple[IssuedCerts, certs.CertIdentity]:
        """renew, and the identity the new certificates carry (what an agent cycle's further answers are
        authorised by); the heartbeat goes on the bot's instance record."""
        key = public_key(public_key_pem)
        ident = caller.ident
        if ident is None:
            raise UnauthenticatedError("renewal needs the current certificate (mutual TLS)")
        objects = self.objects
        if not ident.renewable or not (ident.bot_name or ident.node_name):
            objects.audit(caller, "cert.renew", f"user/{caller.user}", "denied", error="not renewable")
            raise PermissionDeniedError("this certificate is not renewable; join again to get a new one")
        locked_reason = ""
        superseded = ""
        # Check and bump in one transaction: two holders of the same generation cannot both pass; the second
        # one locks the bot (or node), as a copied certificate must.
        key_fp = keys.pem_digest(public_key_pem)
        retry = False
        grant: Grant | None = None
        with objects.backend.transaction():
            found = holders.of_identity(objects, ident)
            if found is None:
                raise UnauthenticatedError("the node of this certificate is no longer registered")
            holder: Holder = found
            st = holder.status
            last = holder.last_renewal(objects) or LastRenewal()
            if ident.instance_id != st.instance_id:
                superseded = stale_identity(holder.kind, holder.name, st)
            elif (ident.generation == st.generation - 1 and last.generation == st.generation
                  and last.key == key_fp and last.instance == st.instance_id):
                # The same renewal again (its answer was lost): the same new key, so issue that generation again
                # instead of taking the agent for a copy. A thief replaying it gets a certificate for a key it lacks.
                retry = True
                new_ident, traits = holder.identity(self.issuer, renewable=True)
            elif ident.generation != st.generation:
                locked_reason = (f"generation mismatch: certificate presented generation {ident.generation}, "
                                 f"the cluster expected {st.generation}")
                holder.lock(locked_reason)
                holder.save(objects)
            else:
                st.generation += 1
                holder.save(objects)
                if holder.kind == "bot":
                    instances.renewed(objects, holder.name, st.instance_id, st.generation, heartbeat)
                new_ident, traits = holder.identity(self.issuer, renewable=True)
                # The expiry tells a later bound_keypair join whether the holder still held valid certificates.
                grant = self.issuer.grant(new_ident, ttl, MAX_RENEWABLE_TTL)
                holder.put_last_renewal(objects, LastRenewal(st.generation, key_fp, st.instance_id, grant.not_after))
        kind, name = holder.kind, holder.name
        if superseded:
            objects.audit(caller, "cert.renew", holder.target, "denied", error="superseded by a new join")
            raise PermissionDeniedError(superseded)
        if locked_reason:
            objects.audit(caller, f"{kind}.lock", holder.target, "denied", presented=ident.generation,
                          expected=st.generation)
            raise PermissionDeniedError(f'{kind} "{name}" is now locked: {locked_reason}. A copied certificate was '
                                        f"renewed; unlock with `machineid ctl {kind}s unlock {name}` and join again")
        if grant is None:  # the same renewal again: no new generation recorded
            grant = self.issuer.grant(new_ident, ttl, MAX_RENEWABLE_TTL)
        out = holder.issue(self.issuer, key, new_ident, traits, grant)
        objects.audit(caller, "cert.renew", holder.target, generation=st.generation,
                      expires=codec.format_time(out.expires), retry=retry)
        return out, new_ident
