"""The Communications Mining API as the vendor defines it: routes, limits, schemas, time format, label
naming. Imports only msgspec and the standard library; the client, the hook and the emulator all read it."""
