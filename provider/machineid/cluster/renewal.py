"""Renewals with the generation counter: each renewal of a bot's renewable identity bumps its generation, and a
certificate of any other generation (a copy renewing after the original) locks the bot."""

from __future__ import annotations

from datetime import timedelta

from machineid.cluster import records
from machineid.cluster.access import stale_identity
from machineid.cluster.caller import Caller
from machineid.cluster.issuance import Grant, IssuedCerts, Issuer, public_key
from machineid.cluster.objects import Objects
from machineid.cluster.records import LastRenewal
from machineid.model import codec, keys
from machineid.model.errors import PermissionDeniedError, UnauthenticatedError
from machineid.model.grants import MAX_RENEWABLE_TTL
from machineid.model.resources import Bot


class Renewals:
    def __init__(self, objects: Objects, issuer: Issuer) -> None:
        self.objects = objects
        self.issuer = issuer

    def renew(self, caller: Caller, public_key_pem: str, ttl: timedelta | None) -> IssuedCerts:
        key = public_key(public_key_pem)
        ident = caller.ident
        if ident is None:
            raise UnauthenticatedError("renewal needs the current certificate (mutual TLS)")
        objects = self.objects
        if not ident.renewable or not ident.bot_name:
            objects.audit(caller, "cert.renew", f"user/{caller.user}", "denied", error="not renewable")
            raise PermissionDeniedError("this certificate is not renewable; join again to get a new one")
        locked_reason = ""
        superseded = ""
        # Check and bump in one transaction: two holders of the same generation cannot both pass; the second
        # one locks the bot, as a copied certificate must.
        key_fp = keys.pem_digest(public_key_pem)
        retry = False
        grant: Grant | None = None
        with objects.backend.transaction():
            bot = objects.get(Bot, ident.bot_name)
            last = records.get(objects, LastRenewal, ident.bot_name) or LastRenewal()
            if ident.instance_id != bot.status.instance_id:
                superseded = stale_identity(bot)
            elif (ident.generation == bot.status.generation - 1 and last.generation == bot.status.generation
                  and last.key == key_fp and last.instance == bot.status.instance_id):
                # The same renewal again (its answer was lost): the same new key, so issue that generation again
                # instead of taking the agent for a copy. A thief replaying it gets a certificate for a key it lacks.
                retry = True
                new_ident, traits = self.issuer.bot_identity(bot, renewable=True)
            elif ident.generation != bot.status.generation:
                locked_reason = (f"generation mismatch: certificate presented generation {ident.generation}, "
                                 f"the cluster expected {bot.status.generation}")
                bot.status.locked = True
                bot.status.lock_reason = locked_reason
                objects.update(bot)
            else:
                bot.status.generation += 1
                bot = objects.update(bot)
                new_ident, traits = self.issuer.bot_identity(bot, renewable=True)
                # The expiry tells a later bound_keypair join whether the bot still held valid certificates.
                grant = self.issuer.grant(new_ident, ttl, MAX_RENEWABLE_TTL)
                records.put(objects, ident.bot_name, LastRenewal(bot.status.generation, key_fp,
                                                                 bot.status.instance_id, grant.not_after))
        if superseded:
            objects.audit(caller, "cert.renew", f"bot/{ident.bot_name}", "denied", error="superseded by a new join")
            raise PermissionDeniedError(superseded)
        if locked_reason:
            objects.audit(caller, "bot.lock", f"bot/{ident.bot_name}", "denied", presented=ident.generation,
                          expected=bot.status.generation)
            raise PermissionDeniedError(f'bot "{ident.bot_name}" is now locked: {locked_reason}. A copied '
                                        f"certificate was renewed; unlock with `machineid ctl bots unlock "
                                        f"{ident.bot_name}` and join again")
        if grant is None:  # the same renewal again: no new generation recorded
            grant = self.issuer.grant(new_ident, ttl, MAX_RENEWABLE_TTL)
        out = self.issuer.issue_granted(key, new_ident, traits, grant)
        objects.audit(caller, "cert.renew", f"bot/{ident.bot_name}", generation=bot.status.generation,
                      expires=codec.format_time(out.expires), retry=retry)
        return out
