"""The rig's ISO 8583 dialect on pyiso8583, message builders and stream framings."""
