"""The API's limits on one request: defined here once, read by the hook and by the emulator.

Where the public documentation states a limit, the value is the documented one; where it is
silent, the value is the emulator's bound and says so. E-mail documents' limits are in
:mod:`airflow_provider_cm.api.email_limits`, a comment's fields' in
:mod:`airflow_provider_cm.api.comment_schema`. ``tests/unit/test_api_contract.py`` fails if any of
these names is assigned anywhere outside ``api/``.
"""

from __future__ import annotations

#: Most comments the ``sync`` route (and the create-only ``PUT .../comments``) takes in one request.
MAX_SYNC_COMMENTS = 16384
#: Most comment ids one ``DELETE .../comments`` request names.
MAX_DELETE_IDS = 32
#: Most comments one export page returns (the export body's ``limit``).
MAX_EXPORT_LIMIT = 256
#: The export page size when the body names none.
DEFAULT_EXPORT_LIMIT = 64
#: Most ``comment_uids`` one export body names.
MAX_EXPORT_UIDS = 256
#: Most ``source_ids`` one export body names.
MAX_EXPORT_SOURCE_IDS = 1024
#: Most comments one stream fetch looks at (its ``size`` and ``max_filtered``).
MAX_STREAM_FETCH = 1024
#: Most documents one predict request takes (``predict`` and ``predict-raw-emails``).
MAX_PREDICT_DOCUMENTS = 4096
#: Most comment uids one annotation read (``GET .../labellings?id=...``) asks for.
MAX_ANNOTATION_READ_IDS = 128
#: Comments one page of the source-wide annotation read returns when the request names no limit.
DEFAULT_ANNOTATION_PAGE = 128
#: Most comments one page of the source-wide annotation read returns (the emulator's bound; the
#: API's is not published).
MAX_ANNOTATION_PAGE = 1024
#: Most label, entity or group definitions one dataset body holds.
MAX_DATASET_DEFS = 1024
#: Most values one user-property filter of a stream lists.
MAX_FILTER_VALUES = 128

#: Every limit above by name (the contract test reads it).
LIMITS = {name: value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, int)}
