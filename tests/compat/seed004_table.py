"""Seed 004's page table, its AngularJS handler in Python: every message is read as a
page (page_no, total_number, data); a page request is the bare page number.

Run as ``python seed004_table.py <ws url> <page>``: prints each message's page_no,
total_number and the first cell of data, asks for <page>, then prints until it shows it.
"""

import json
import sys

from websockets.sync.client import connect

with connect(sys.argv[1]) as ws:
    asked = False
    while True:
        message = json.loads(ws.recv(timeout=10))
        current_page = int(message["page_no"])
        total_rows = int(message["total_number"])
        rows = message["data"]
        print(current_page, total_rows, rows[0][0] if rows else "", flush=True)
        if not asked:
            ws.send(sys.argv[2])  # $scope.pageChanged: ws.send($scope.currentPage)
            asked = True
        elif current_page == int(sys.argv[2]):
            break
