# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""What a debtor needs to pay: IBAN, payment reference, amount and link.

Every reminder and letter states them (issue 9); letters in euros also carry
the EPC QR code ("GiroCode") that banking apps scan to fill in a transfer.
"""
import dataclasses
import io
from decimal import Decimal

import segno.helpers
from stdnum import iban as stdnum_iban

from trytond.i18n import gettext

# EPC069-12: the unstructured remittance information holds 140 characters,
# the beneficiary's name 70.
MAX_REFERENCE, MAX_NAME = 140, 70

LABELS = {
    'nl': {'iban': "IBAN", 'beneficiary': "Ten name van",
        'reference': "Betalingskenmerk", 'amount': "Te betalen",
        'link': "Online betalen", 'qr': "Scan met uw bankapp om te betalen"},
    'en': {'iban': "IBAN", 'beneficiary': "In the name of",
        'reference': "Payment reference", 'amount': "To pay",
        'link': "Pay online", 'qr': "Scan with your banking app to pay"},
    }


@dataclasses.dataclass
class PaymentData:
    beneficiary: str
    iban: str               # electronic format, no spaces
    reference: str
    amount: Decimal
    currency: str
    link: str

    @property
    def iban_display(self):
        return stdnum_iban.format(self.iban) if self.iban else ''

    def epc_payload_arguments(self):
        "The arguments of segno's EPC QR code; None where none can be made."
        if (self.currency != 'EUR' or not self.iban
                or not Decimal('0.01') <= self.amount <= Decimal(
                    '999999999.99')):
            return None
        return dict(name=self.beneficiary[:MAX_NAME], iban=self.iban,
            amount=self.amount, text=self.reference[:MAX_REFERENCE],
            encoding='utf-8')

    def epc_qr_png(self, scale=4):
        "The EPC QR code as PNG bytes, or None (not in euros, no IBAN)."
        arguments = self.epc_payload_arguments()
        if arguments is None:
            return None
        buffer = io.BytesIO()
        segno.helpers.make_epc_qr(**arguments).save(
            buffer, kind='png', scale=scale, border=4)
        return buffer.getvalue()

    def sentence(self, language, money):
        "The payment instruction in the debtor's language."
        # An administration without an IBAN yet: the link still lets
        # them pay.
        message = ('payt_dunning.msg_payment_instruction' if self.iban
            else 'payt_dunning.msg_payment_instruction_without_iban')
        return gettext(message, language).format(amount=money(
                self.amount), iban=self.iban_display,
            beneficiary=self.beneficiary, reference=self.reference,
            link=self.link)


def payment_reference(numbers, debtor_number):
    """The reference a transfer quotes: the invoice numbers it pays, or the
    debtor's number where they would not fit in the bank's 140 characters."""
    text = ' '.join(n for n in numbers if n)
    if text and len(text) <= MAX_REFERENCE:
        return text
    return debtor_number[:MAX_REFERENCE]


def validate_iban(value):
    "The IBAN in electronic format, or ValueError."
    return stdnum_iban.validate(value)
