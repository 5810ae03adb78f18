# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The email provider: the only place where a message meets SMTP.

Every email to a debtor is a row of the communication outbox (flow
reminders, plan schedules and term reminders, message notifications) or a
case letter, and leaves through `hand_over`, Tryton's SMTP setting when
the transaction commits. tests/test_outbox.py fails when another module
talks to SMTP: a second way out would skip opt-outs, bounces and delivery
status."""
import smtplib

from trytond.sendmail import send_message_transactional

# What a failed SMTP conversation raises (the CLI reports them).
ERRORS = (OSError, smtplib.SMTPException)


def hand_over(msg):
    "Send `msg` when the caller's transaction commits."
    send_message_transactional(msg, strict=True)
