#!/usr/bin/env python3
"""Print a fresh API token of the demo's first administration (make demo).

Tokens are stored hashed, so the demo cannot show an old one: every start
revokes the previous demo token and issues a new one, acting as the user
`consultant`, with every scope. Prints: <administration id> <token>."""
import sys

from trytond.pool import Pool
from trytond.transaction import Transaction

NAME = "Demo partner"


def main(database):
    Pool.start()
    pool = Pool(database)
    pool.init()
    with Transaction().start(database, 0) as transaction:
        Token = pool.get('payt.api.token')
        User = pool.get('res.user')
        Administration = pool.get('payt.administration')
        Token.revoke(Token.search([('name', '=', NAME),
                    ('revoked', '=', False)]))
        administration = Administration.search([], order=[('id', 'ASC')],
            limit=1)[0]
        users = User.search([('login', '=', 'consultant')], limit=1)
        _, token = Token.issue(administration, NAME,
            user=users[0].id if users else None)
        transaction.commit()
    print(administration.id, token)


if __name__ == '__main__':
    main(sys.argv[1])
