# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Email by SMTP (Tryton's [email] uri): the only place a message meets
SMTP; tests/test_outbox.py fails when another module talks to it.

The sender hands the email over before it records it as sent, so a crash
in between sends it again: with the same Message-ID (derived from the
communication's idempotency key), which mail clients and our bounce
handling recognise. One connection is kept per thread for a sender's
batches (`close` lets go of it)."""
import smtplib
import threading

from trytond.sendmail import get_smtp_server, send_message

from .base import Provider, ProviderError, Receipt

# What a failed SMTP conversation raises (the CLI reports them).
ERRORS = (OSError, smtplib.SMTPException)


class SMTPProvider(Provider):
    name = 'smtp'
    # A resent email carries its Message-ID: recognised, not a new message.
    idempotent = True
    _local = threading.local()

    def send(self, message):
        msg = message.message
        try:
            server = self._server()
            # Reconnects once on a dropped connection, retries a 4xx.
            self._local.server = send_message(
                msg, server=server, strict=True) or server
        except smtplib.SMTPRecipientsRefused as error:
            self.close()
            raise ProviderError("The mail server refused %s: %s" % (
                    msg['To'], _reasons(error)))
        except smtplib.SMTPResponseException as error:
            self.close()
            raise ProviderError("The mail server answered %s %s" % (
                    error.smtp_code, _text(error.smtp_error)),
                retry=error.smtp_code < 500)
        except ERRORS as error:
            self.close()
            refused = isinstance(error, ConnectionRefusedError)
            raise ProviderError("The mail server is unreachable: %s" % (
                    error or type(error).__name__),
                retry=True, ambiguous=not refused)
        return Receipt(provider_id=msg['Message-ID'], state='sent')

    def _server(self):
        server = getattr(self._local, 'server', None)
        if server is None:
            server = self._local.server = get_smtp_server(strict=True)
        return server

    @classmethod
    def close(cls):
        server = getattr(cls._local, 'server', None)
        cls._local.server = None
        if server is not None:
            try:
                server.quit()
            except ERRORS:
                server.close()


def _text(value):
    return value.decode(errors='replace') if isinstance(value, bytes) else (
        str(value))


def _reasons(error):
    return '; '.join('%s %s' % (code, _text(text))
        for code, text in error.recipients.values())
