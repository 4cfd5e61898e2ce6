"""Shared helpers of the deploy checks: collect failures, print them, exit 1."""
import sys


class Checker:
    def __init__(self, name):
        self.name = name
        self.failures = []
        self.checked = 0

    def expect(self, condition, message):
        self.checked += 1
        if not condition:
            self.failures.append(message)
        return condition

    def finish(self):
        for failure in self.failures:
            print(f"{self.name}: FAIL: {failure}", file=sys.stderr)
        if self.failures:
            print(f"{self.name}: {len(self.failures)} of {self.checked} checks failed", file=sys.stderr)
            sys.exit(1)
        print(f"{self.name}: {self.checked} checks passed")
