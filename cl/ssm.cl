/* State-space and linear-recurrent mixers (selective scan, SSD, linear attention). */
