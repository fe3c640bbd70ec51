"""DRF's JSON parser with a nesting bound: 100,000 `[` answer 400 VALIDATION_ERROR, not 500."""
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from imserver import jsonlimits


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - {jsonlimits.TooDeep()}") from exc
        if isinstance(data, (dict, list)):
            try:
                jsonlimits.check_depth(data)
            except jsonlimits.TooDeep as exc:
                raise ParseError(f"JSON parse error - {exc}") from exc
        return data
