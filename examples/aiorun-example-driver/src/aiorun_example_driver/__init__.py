"""An example third-party aiorun driver package (storage ``example``, network ``null``)."""
