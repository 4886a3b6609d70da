"""The emulated tenant's objects (:mod:`.records`), every change to them (:mod:`.tenant`), and how they
are kept: lock, journal and snapshot (:mod:`.store`, :mod:`.journal`, :mod:`.persistence`)."""
